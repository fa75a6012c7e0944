//! Status expectations checked against `portico status DIR -o json` (a `kind: List`), with
//! upstream's matching rules: conditions by type/status/reason, route parents by the parent's
//! namespace/name (plus group, kind and controllerName as upstream requires), and every
//! condition carrying `observedGeneration == metadata.generation`.

use serde_json::Value;

use super::case::{ConditionExpectation, ListenerExpectation, StatusExpectation};
use super::manifests::CONTROLLER;

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Failed status expectations of one test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusReport {
    /// Conditions, listeners or parents that differ, one readable line each.
    pub mismatches: Vec<String>,
    /// One summary line when conditions lack `observedGeneration == metadata.generation`.
    pub generation: Option<String>,
}

impl StatusReport {
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty() && self.generation.is_none()
    }
}

/// Checks every expectation against the `portico status` list.
pub fn check_all(list: &Value, expectations: &[StatusExpectation]) -> StatusReport {
    let items = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut failures = Vec::new();
    let mut generation = Vec::new();
    for exp in expectations {
        let ns = exp.namespace.as_deref().unwrap_or("");
        let label = format!("{} {}/{}", exp.kind, ns, exp.name);
        let found = items.iter().find(|item| {
            item["kind"].as_str() == Some(exp.kind.as_str())
                && item["metadata"]["name"].as_str() == Some(exp.name.as_str())
                && item["metadata"]["namespace"].as_str().unwrap_or("") == ns
        });
        let Some(object) = found else {
            failures.push(format!("{label}: not in `portico status` output"));
            continue;
        };
        for problem in check_object(object, exp) {
            match problem {
                Problem::Mismatch(text) => failures.push(format!("{label}: {text}")),
                Problem::Generation(text) => generation.push(format!("{label}: {text}")),
            }
        }
    }
    StatusReport {
        mismatches: failures,
        generation: generation.first().map(|first| {
            format!(
                "{} condition(s) lack observedGeneration == metadata.generation, e.g. {first}",
                generation.len()
            )
        }),
    }
}

/// One failed check; generation mismatches are summarised separately because one missing
/// `observedGeneration` shows on every condition of a test.
enum Problem {
    Mismatch(String),
    Generation(String),
}

impl From<String> for Problem {
    fn from(text: String) -> Self {
        Self::Mismatch(text)
    }
}

fn check_object(object: &Value, exp: &StatusExpectation) -> Vec<Problem> {
    // Kubernetes starts generations at 1; a file-based object is in its first generation.
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
    let status = &object["status"];
    let mut out = Vec::new();
    match exp.kind.as_str() {
        "Gateway" | "ListenerSet" | "GatewayClass" => {
            check_conditions(
                &status["conditions"],
                &exp.conditions,
                generation,
                "",
                &mut out,
            );
            if let Some(listeners) = &exp.listeners {
                check_listeners(&status["listeners"], listeners, generation, &mut out);
            }
            if let Some(want) = exp.attached_listener_sets {
                let got = status["attachedListenerSets"].as_i64();
                if got != Some(want) {
                    out.push(Problem::Mismatch(format!(
                        "attachedListenerSets {got:?}, want {want}"
                    )));
                }
            }
        }
        "BackendTLSPolicy" => match find_ancestor(status, exp) {
            Ok(ancestor) => check_conditions(
                &ancestor["conditions"],
                &exp.conditions,
                generation,
                "ancestor ",
                &mut out,
            ),
            Err(problem) => out.push(problem.into()),
        },
        _ => match find_parent(object, exp) {
            Ok(parent) => check_conditions(
                &parent["conditions"],
                &exp.conditions,
                generation,
                "parent ",
                &mut out,
            ),
            Err(problem) => out.push(problem.into()),
        },
    }
    out
}

fn check_conditions(
    actual: &Value,
    expected: &[ConditionExpectation],
    generation: i64,
    scope: &str,
    out: &mut Vec<Problem>,
) {
    let actual = actual.as_array().map(Vec::as_slice).unwrap_or_default();
    for want in expected {
        let Some(cond) = actual
            .iter()
            .find(|c| c["type"].as_str() == Some(want.type_.as_str()))
        else {
            out.push(Problem::Mismatch(format!(
                "{scope}condition {} missing",
                want.type_
            )));
            continue;
        };
        let status = cond["status"].as_str().unwrap_or("");
        let reason = cond["reason"].as_str().unwrap_or("");
        let status_ok = want.status.as_deref().is_none_or(|s| s == status);
        let reason_ok = want.reason.as_deref().is_none_or(|r| r == reason);
        if !status_ok || !reason_ok {
            let message = cond["message"].as_str().unwrap_or("");
            out.push(Problem::Mismatch(format!(
                "{scope}condition {} is {status}/{reason}, want {}/{} ({message})",
                want.type_,
                want.status.as_deref().unwrap_or("*"),
                want.reason.as_deref().unwrap_or("*"),
            )));
        }
    }
    for cond in actual {
        let observed = cond["observedGeneration"].as_i64();
        if observed != Some(generation) {
            out.push(Problem::Generation(format!(
                "{scope}condition {} has observedGeneration {observed:?}, want {generation}",
                cond["type"].as_str().unwrap_or("?")
            )));
        }
    }
}

fn check_listeners(
    actual: &Value,
    expected: &[ListenerExpectation],
    generation: i64,
    out: &mut Vec<Problem>,
) {
    let actual = actual.as_array().map(Vec::as_slice).unwrap_or_default();
    // Upstream's GatewayStatusMustHaveListeners compares the whole list.
    let exact = expected
        .iter()
        .any(|l| l.attached_routes.is_some() || l.supported_kinds.is_some());
    if exact && actual.len() != expected.len() {
        let names: Vec<&str> = actual.iter().filter_map(|l| l["name"].as_str()).collect();
        out.push(Problem::Mismatch(format!(
            "status.listeners are {names:?}, want exactly {} listeners",
            expected.len()
        )));
    }
    for want in expected {
        let Some(listener) = actual
            .iter()
            .find(|l| l["name"].as_str() == Some(want.name.as_str()))
        else {
            out.push(Problem::Mismatch(format!(
                "listener {} has no status",
                want.name
            )));
            continue;
        };
        if let Some(routes) = want.attached_routes {
            let got = listener["attachedRoutes"].as_i64();
            if got != Some(routes) {
                out.push(Problem::Mismatch(format!(
                    "listener {} attachedRoutes {got:?}, want {routes}",
                    want.name
                )));
            }
        }
        if let Some(kinds) = &want.supported_kinds {
            let got: Vec<(String, String)> = listener["supportedKinds"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    let group = k["group"].as_str().unwrap_or(GATEWAY_GROUP).to_string();
                    (group, k["kind"].as_str().unwrap_or("").to_string())
                })
                .collect();
            if kinds.is_empty() && !got.is_empty() {
                out.push(Problem::Mismatch(format!(
                    "listener {} supportedKinds {got:?}, want none",
                    want.name
                )));
            }
            for kind in kinds {
                let group = if kind.group.is_empty() {
                    GATEWAY_GROUP
                } else {
                    &kind.group
                };
                if !got.iter().any(|(g, k)| g == group && *k == kind.kind) {
                    out.push(Problem::Mismatch(format!(
                        "listener {} supportedKinds {got:?} lacks {}",
                        want.name, kind.kind
                    )));
                }
            }
        }
        let scope = format!("listener {} ", want.name);
        check_conditions(
            &listener["conditions"],
            &want.conditions,
            generation,
            &scope,
            out,
        );
    }
}

/// `ns/name` or `ns/name/section`.
fn split_ref(reference: &str) -> (&str, &str, Option<&str>) {
    let mut parts = reference.splitn(3, '/');
    let ns = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("");
    (ns, name, parts.next())
}

fn find_parent<'a>(route: &'a Value, exp: &StatusExpectation) -> Result<&'a Value, String> {
    let reference = exp
        .parent_ref
        .as_deref()
        .ok_or("expectation names no parentRef")?;
    let (ns, name, section) = split_ref(reference);
    let route_ns = route["metadata"]["namespace"].as_str().unwrap_or("default");
    let parent_kind = exp.parent_kind.as_deref().unwrap_or("Gateway");
    let parents = route["status"]["parents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let candidates: Vec<&Value> = parents
        .iter()
        .filter(|p| {
            let r = &p["parentRef"];
            r["name"].as_str() == Some(name)
                && r["namespace"].as_str().unwrap_or(route_ns) == ns
                && r["kind"].as_str().unwrap_or("Gateway") == parent_kind
                && section.is_none_or(|s| r["sectionName"].as_str() == Some(s))
        })
        .collect();
    let Some(parent) = candidates.first() else {
        let refs: Vec<String> = parents.iter().map(|p| p["parentRef"].to_string()).collect();
        return Err(format!(
            "no status.parents entry for {reference} (have {refs:?})"
        ));
    };
    let r = &parent["parentRef"];
    // Upstream matches on the API-server-defaulted spec fields, so they must be spelled out.
    if r["group"].as_str() != Some(GATEWAY_GROUP) || r["kind"].as_str() != Some(parent_kind) {
        return Err(format!(
            "parent {reference}: parentRef must carry group {GATEWAY_GROUP} and kind {parent_kind}, got {r}"
        ));
    }
    if ns != route_ns && r["namespace"].as_str() != Some(ns) {
        return Err(format!(
            "parent {reference}: parentRef must carry namespace {ns}"
        ));
    }
    if parent["controllerName"].as_str() != Some(CONTROLLER) {
        return Err(format!(
            "parent {reference}: controllerName {}, want {CONTROLLER}",
            parent["controllerName"]
        ));
    }
    Ok(parent)
}

fn find_ancestor<'a>(status: &'a Value, exp: &StatusExpectation) -> Result<&'a Value, String> {
    let reference = exp
        .parent_ref
        .as_deref()
        .ok_or("expectation names no parentRef")?;
    let (ns, name, _) = split_ref(reference);
    status["ancestors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| {
            a["ancestorRef"]["name"].as_str() == Some(name)
                && a["ancestorRef"]["namespace"].as_str().unwrap_or(ns) == ns
        })
        .ok_or_else(|| format!("no status.ancestors entry for {reference}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(t: &str, s: &str, r: &str) -> Value {
        json!({"type": t, "status": s, "reason": r, "observedGeneration": 1})
    }

    fn expectation(yaml: &str) -> Vec<StatusExpectation> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn route_parent_conditions_match() {
        let list = json!({"kind": "List", "items": [{
            "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "ns", "generation": 1},
            "status": {"parents": [{
                "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "gw"},
                "controllerName": CONTROLLER,
                "conditions": [cond("Accepted", "True", "Accepted"), cond("ResolvedRefs", "False", "BackendNotFound")],
            }]},
        }]});
        let ok = expectation(
            "- {kind: HTTPRoute, namespace: ns, name: r, parentRef: ns/gw, conditions: [{type: Accepted, status: 'True'}]}",
        );
        assert!(check_all(&list, &ok).is_ok());
        let bad = expectation(
            "- {kind: HTTPRoute, namespace: ns, name: r, parentRef: ns/gw, conditions: [{type: ResolvedRefs, status: 'True'}]}",
        );
        let failures = check_all(&list, &bad).mismatches;
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].contains("ResolvedRefs is False/BackendNotFound"),
            "{failures:?}"
        );
        let other = expectation(
            "- {kind: HTTPRoute, namespace: ns, name: r, parentRef: ns/other, conditions: []}",
        );
        assert!(check_all(&list, &other).mismatches[0].contains("no status.parents entry"));
    }

    #[test]
    fn gateway_listeners_and_generations() {
        let list = json!({"items": [{
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "ns", "generation": 2},
            "status": {
                "conditions": [cond("Accepted", "True", "Accepted")],
                "listeners": [{"name": "http", "attachedRoutes": 1, "supportedKinds": [{"kind": "HTTPRoute"}], "conditions": []}],
            },
        }]});
        let exp = expectation(
            "- {kind: Gateway, namespace: ns, name: gw, conditions: [{type: Accepted}], listeners: [{name: http, attachedRoutes: 2, supportedKinds: [{kind: HTTPRoute}]}]}",
        );
        let report = check_all(&list, &exp);
        assert_eq!(
            report.mismatches,
            vec!["Gateway ns/gw: listener http attachedRoutes Some(1), want 2".to_string()]
        );
        let generation = report.generation.unwrap();
        assert!(generation.starts_with("1 condition(s)"), "{generation}");
        assert!(
            generation.contains("observedGeneration Some(1), want 2"),
            "{generation}"
        );
    }
}
