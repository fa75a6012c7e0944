//! Which Secrets the configuration refers to. Only those reach the translator, so Secrets
//! that have nothing to do with Gateways never enter Portico's view (or its logs).

use std::collections::BTreeSet;

use portico_translator::ObjectKey;
use serde_json::Value;

/// Fields that hold references to certificates. `certificateRefs` and `clientCertificateRef`
/// default to kind Secret; `caCertificateRefs` always name their kind.
const REF_FIELDS: [(&str, Option<&str>); 3] = [
    ("certificateRefs", Some("Secret")),
    ("clientCertificateRef", Some("Secret")),
    ("caCertificateRefs", None),
];

/// (namespace, name) of every Secret referenced by the given objects (Gateways, ListenerSets,
/// BackendTLSPolicies, ...), wherever in their spec the reference sits. Whether a
/// cross-namespace reference is allowed is the translator's call (ReferenceGrants).
pub fn referenced_secrets<'a>(
    objects: impl Iterator<Item = (&'a ObjectKey, &'a Value)>,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (key, object) in objects {
        if let Some(spec) = object.get("spec") {
            walk(spec, &key.namespace, &mut out);
        }
    }
    out
}

fn walk(value: &Value, namespace: &str, out: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (field, child) in map {
                match REF_FIELDS.iter().find(|(name, _)| name == field) {
                    Some((_, default_kind)) => match child {
                        Value::Array(refs) => refs
                            .iter()
                            .for_each(|r| add(r, *default_kind, namespace, out)),
                        single => add(single, *default_kind, namespace, out),
                    },
                    None => walk(child, namespace, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, namespace, out)),
        _ => {}
    }
}

fn add(
    reference: &Value,
    default_kind: Option<&str>,
    namespace: &str,
    out: &mut BTreeSet<(String, String)>,
) {
    let kind = reference
        .get("kind")
        .and_then(Value::as_str)
        .or(default_kind);
    let group = reference.get("group").and_then(Value::as_str).unwrap_or("");
    let Some(name) = reference.get("name").and_then(Value::as_str) else {
        return;
    };
    if kind != Some("Secret") || !group.is_empty() {
        return;
    }
    let ns = reference
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(namespace);
    out.insert((ns.to_string(), name.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_listener_backend_and_ca_references() {
        let gateway = json!({"spec": {
            "listeners": [{"tls": {"certificateRefs": [{"name": "a"}, {"name": "b", "namespace": "certs"},
                                                      {"name": "c", "kind": "ConfigMap"}]}}],
            "tls": {"backend": {"clientCertificateRef": {"name": "client"}}},
        }});
        let policy = json!({"spec": {"validation": {"caCertificateRefs": [
            {"group": "", "kind": "Secret", "name": "ca"}, {"group": "", "kind": "ConfigMap", "name": "ca-cm"}]}}});
        let gw_key = ObjectKey::new("Gateway", "ns", "gw");
        let policy_key = ObjectKey::new("BackendTLSPolicy", "apps", "p");
        let found = referenced_secrets([(&gw_key, &gateway), (&policy_key, &policy)].into_iter());
        let found: Vec<String> = found
            .into_iter()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .collect();
        assert_eq!(found, ["apps/ca", "certs/b", "ns/a", "ns/client"]);
    }
}
