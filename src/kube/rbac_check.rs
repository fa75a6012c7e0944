//! deploy/20-rbac.yaml grants what the kube source uses and nothing more: list and watch of
//! every watched kind, get and patch of the status of every kind whose status it writes, and
//! the leader Lease.

use std::collections::BTreeSet;

use serde_json::Value;

use super::kinds;

/// (apiGroup, resource, verb) triples a Role or ClusterRole document grants, with the
/// resourceNames a rule is limited to.
fn grants(doc: &Value) -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for rule in doc["rules"].as_array().into_iter().flatten() {
        let strings = |field: &str| -> Vec<String> {
            rule[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        let names = strings("resourceNames");
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                for verb in strings("verbs") {
                    out.insert((group.clone(), resource.clone(), verb, names.clone()));
                }
            }
        }
    }
    out
}

fn rbac_documents() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/20-rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn grant(group: &str, resource: &str, verb: &str) -> (String, String, String, Vec<String>) {
    (group.into(), resource.into(), verb.into(), Vec::new())
}

#[test]
fn the_cluster_role_grants_exactly_what_the_source_uses() {
    let docs = rbac_documents();
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let mut want = BTreeSet::new();
    for kind in kinds::all() {
        let (group, plural) = (&kind.resource.group, &kind.resource.plural);
        want.insert(grant(group, plural, "list"));
        want.insert(grant(group, plural, "watch"));
        if kind.owns_status {
            want.insert(grant(group, &format!("{plural}/status"), "get"));
            want.insert(grant(group, &format!("{plural}/status"), "patch"));
        }
    }
    let have = grants(role);
    let missing: Vec<_> = want.difference(&have).collect();
    let extra: Vec<_> = have.difference(&want).collect();
    assert!(missing.is_empty(), "deploy/20-rbac.yaml lacks {missing:?}");
    assert!(
        extra.is_empty(),
        "deploy/20-rbac.yaml grants more than needed: {extra:?}"
    );
}

#[test]
fn the_lease_role_covers_only_the_leader_lease() {
    let docs = rbac_documents();
    let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    let lease = || vec!["portico-leader".to_string()];
    let want: BTreeSet<_> = [
        (
            "coordination.k8s.io".into(),
            "leases".into(),
            "create".into(),
            Vec::new(),
        ),
        (
            "coordination.k8s.io".into(),
            "leases".into(),
            "get".into(),
            lease(),
        ),
        (
            "coordination.k8s.io".into(),
            "leases".into(),
            "update".into(),
            lease(),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(grants(role), want);
    assert_eq!(role["metadata"]["namespace"], "portico-system");
}
