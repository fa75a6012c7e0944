//! The run-time changes of the cases whose notes describe them (CONVENTIONS.md, "Status or
//! traffic after run-time changes"), as upstream's Go tests make them: each step edits objects
//! the way `kubectl patch`/`create`/`delete` would and names the status that must follow.

use serde_json::{Value, json};

use super::case::{Case, StatusExpectation};
use super::manifests::{kind, name, namespace};

const INFRA: &str = "gateway-conformance-infra";

/// One change to the applied objects.
pub enum Change {
    /// Edit the object of this kind/namespace/name in place (namespace "" = cluster-scoped).
    Patch {
        kind: &'static str,
        namespace: &'static str,
        name: &'static str,
        edit: Box<dyn Fn(&mut Value) + Send + Sync>,
    },
    /// Create a new object.
    Create(Value),
    /// Delete the object of this kind/namespace/name.
    Delete {
        kind: String,
        namespace: String,
        name: String,
    },
}

/// One run-time step: a change, then the status that must eventually hold.
pub struct Step {
    pub label: String,
    pub change: Change,
    pub expect: Vec<StatusExpectation>,
    /// `(gateway ns/name, addresses)`: status.addresses must be exactly these IPAddress values.
    pub addresses: Option<(String, Vec<String>)>,
}

/// What steps need from the run: the usable static address and the suite's CA.
#[derive(Clone, Debug, Default)]
pub struct StepInputs {
    pub usable_address: String,
    pub checks_ca_pem: String,
}

/// The run-time steps of `case` (empty for most cases). `docs` are the case's own manifests.
pub fn steps_for(case: &Case, docs: &[Value], inputs: &StepInputs) -> Vec<Step> {
    match case.name.as_str() {
        "GatewayClassObservedGenerationBump" => vec![patch_step(
            "spec.description old -> new",
            "GatewayClass",
            "",
            "gatewayclass-observed-generation-bump",
            |o| o["spec"]["description"] = json!("new"),
            "- {kind: GatewayClass, name: gatewayclass-observed-generation-bump, conditions: [{type: Accepted}]}",
        )],
        "GatewayObservedGenerationBump" => vec![patch_step(
            "listener alternate appended",
            "Gateway",
            INFRA,
            "gateway-observed-generation-bump",
            |o| {
                push_listener(
                    o,
                    json!({"name": "alternate", "hostname": "foo.com", "port": 80,
                    "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}),
                )
            },
            &ready_gateway("gateway-observed-generation-bump", ""),
        )],
        "GatewayModifyListeners" => modify_listeners(),
        "GatewayStaticAddresses" => static_addresses(inputs),
        "BackendTLSPolicyObservedGenerationBump" => vec![patch_step(
            "spec.validation.hostname -> foo.example.com",
            "BackendTLSPolicy",
            INFRA,
            "observed-generation-bump",
            |o| o["spec"]["validation"]["hostname"] = json!("foo.example.com"),
            "- {kind: BackendTLSPolicy, namespace: gateway-conformance-infra, name: observed-generation-bump, parentRef: gateway-conformance-infra/same-namespace, conditions: [{type: Accepted, status: 'True'}]}",
        )],
        "BackendTLSPolicy" => backend_tls_reconcile(inputs),
        name if name.ends_with("RouteReferenceGrant") => reference_grant_deleted(docs),
        _ => Vec::new(),
    }
}

fn patch_step(
    label: &str,
    kind: &'static str,
    namespace: &'static str,
    name: &'static str,
    edit: impl Fn(&mut Value) + Send + Sync + 'static,
    expect: &str,
) -> Step {
    Step {
        label: label.to_string(),
        change: Change::Patch {
            kind,
            namespace,
            name,
            edit: Box::new(edit),
        },
        expect: parse(expect),
        addresses: None,
    }
}

fn parse(yaml: &str) -> Vec<StatusExpectation> {
    // The expectations are literals of this file; a typo shows as a failing step, not a panic.
    serde_yaml::from_str(yaml).unwrap_or_default()
}

fn push_listener(gateway: &mut Value, listener: Value) {
    if let Some(list) = gateway["spec"]["listeners"].as_array_mut() {
        list.push(listener);
    }
}

/// Accepted True and Programmed True on one infra Gateway, with `listeners` (YAML) if given.
fn ready_gateway(name: &str, listeners: &str) -> String {
    let listeners = if listeners.is_empty() {
        String::new()
    } else {
        format!(", listeners: {listeners}")
    };
    format!(
        "- {{kind: Gateway, namespace: {INFRA}, name: {name}, conditions: [{{type: Accepted, status: 'True'}}, {{type: Programmed, status: 'True'}}]{listeners}}}"
    )
}

/// Upstream's listener check of GatewayModifyListeners/GatewayStaticAddresses.
fn listener(name: &str, routes: i64) -> String {
    format!(
        "{{name: {name}, attachedRoutes: {routes}, supportedKinds: [{{kind: HTTPRoute}}], conditions: [{{type: Accepted, status: 'True'}}, {{type: ResolvedRefs, status: 'True'}}]}}"
    )
}

fn modify_listeners() -> Vec<Step> {
    vec![
        patch_step(
            "gateway-add-listener: listener http appended",
            "Gateway",
            INFRA,
            "gateway-add-listener",
            |o| {
                push_listener(
                    o,
                    json!({"name": "http", "port": 80, "protocol": "HTTP",
                    "hostname": "data.test.com", "allowedRoutes": {"namespaces": {"from": "All"}}}),
                )
            },
            &ready_gateway(
                "gateway-add-listener",
                &format!("[{}, {}]", listener("https", 1), listener("http", 1)),
            ),
        ),
        patch_step(
            "gateway-remove-listener: listener https removed",
            "Gateway",
            INFRA,
            "gateway-remove-listener",
            |o| {
                if let Some(list) = o["spec"]["listeners"].as_array_mut() {
                    list.retain(|l| l["name"] != "https");
                }
            },
            &ready_gateway(
                "gateway-remove-listener",
                &format!("[{}]", listener("http", 1)),
            ),
        ),
    ]
}

fn static_addresses(inputs: &StepInputs) -> Vec<Step> {
    let gateway = "gateway-static-addresses";
    let conditions = |programmed: &str| {
        format!(
            "- {{kind: Gateway, namespace: {INFRA}, name: {gateway}, conditions: [{{type: Accepted, status: 'True', reason: Accepted}}, {{type: Programmed, {programmed}}}]"
        )
    };
    let mut last = patch_step(
        "unusable address removed",
        "Gateway",
        INFRA,
        gateway,
        |o| remove_address(o, |a| a["value"] == super::manifests::UNUSABLE_ADDRESS),
        &format!(
            "{}, listeners: [{}]}}",
            conditions("status: 'True', reason: Programmed"),
            listener("http", 0)
        ),
    );
    last.addresses = Some((
        format!("{INFRA}/{gateway}"),
        vec![inputs.usable_address.clone()],
    ));
    vec![
        patch_step(
            "invalid address removed",
            "Gateway",
            INFRA,
            gateway,
            |o| remove_address(o, |a| a["type"] == "test/fake-invalid-type"),
            &format!(
                "{}}}",
                conditions("status: 'False', reason: AddressNotUsable")
            ),
        ),
        last,
    ]
}

fn remove_address(gateway: &mut Value, matches: impl Fn(&Value) -> bool) {
    if let Some(list) = gateway["spec"]["addresses"].as_array_mut() {
        list.retain(|a| !matches(a));
    }
}

/// BackendTLSPolicy's reconcile-test subtest.
fn backend_tls_reconcile(inputs: &StepInputs) -> Vec<Step> {
    const MAP: &str = "tls-checks-ca-certificate-reconcile-test";
    let policy = |conditions: &str| {
        parse(&format!(
            "- {{kind: BackendTLSPolicy, namespace: {INFRA}, name: reconcile-test, parentRef: {INFRA}/same-namespace, conditions: {conditions}}}"
        ))
    };
    let invalid = "[{type: Accepted, status: 'False', reason: NoValidCACertificate}, {type: ResolvedRefs, status: 'False', reason: InvalidCACertificateRef}]";
    let valid = "[{type: Accepted, status: 'True', reason: Accepted}, {type: ResolvedRefs, status: 'True', reason: ResolvedRefs}]";
    let set_ca_ref = |target: &'static str| -> Box<dyn Fn(&mut Value) + Send + Sync> {
        Box::new(move |o: &mut Value| {
            o["spec"]["validation"]["caCertificateRefs"] =
                json!([{"group": "", "kind": "ConfigMap", "name": target}])
        })
    };
    let set_ca = |pem: String| -> Box<dyn Fn(&mut Value) + Send + Sync> {
        Box::new(move |o: &mut Value| o["data"]["ca.crt"] = json!(pem))
    };
    let step = |label: &str, change: Change, expect: Vec<StatusExpectation>| Step {
        label: label.to_string(),
        change,
        expect,
        addresses: None,
    };
    let policy_patch = |edit| Change::Patch {
        kind: "BackendTLSPolicy",
        namespace: INFRA,
        name: "reconcile-test",
        edit,
    };
    let map_patch = |edit| Change::Patch {
        kind: "ConfigMap",
        namespace: INFRA,
        name: MAP,
        edit,
    };
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": MAP, "namespace": INFRA},
        "data": {"ca.crt": inputs.checks_ca_pem},
    });
    vec![
        step(
            "reconcile-test refers to a missing ConfigMap",
            policy_patch(set_ca_ref(MAP)),
            policy(invalid),
        ),
        step(
            "that ConfigMap created",
            Change::Create(config_map),
            policy(valid),
        ),
        step(
            "its ca.crt emptied",
            map_patch(set_ca(String::new())),
            policy(invalid),
        ),
        step(
            "its ca.crt restored",
            map_patch(set_ca(inputs.checks_ca_pem.clone())),
            policy(valid),
        ),
        // Upstream asserts nothing after restoring; the policy must still be reconciled.
        step(
            "original caCertificateRefs restored",
            policy_patch(set_ca_ref("tls-checks-ca-certificate")),
            policy("[]"),
        ),
    ]
}

/// TCPRoute/UDPRouteReferenceGrant: every ReferenceGrant of the test deleted, then every
/// L4 route's parent reports ResolvedRefs False/RefNotPermitted.
fn reference_grant_deleted(docs: &[Value]) -> Vec<Step> {
    let mut expect = Vec::new();
    for route in docs
        .iter()
        .filter(|d| matches!(kind(d), "TCPRoute" | "UDPRoute"))
    {
        let route_ns = namespace(route);
        for parent in route["spec"]["parentRefs"].as_array().into_iter().flatten() {
            let parent_ns = parent["namespace"].as_str().unwrap_or(route_ns);
            let parent_name = parent["name"].as_str().unwrap_or_default();
            expect.push(StatusExpectation {
                kind: kind(route).to_string(),
                namespace: Some(route_ns.to_string()),
                name: name(route).to_string(),
                parent_ref: Some(format!("{parent_ns}/{parent_name}")),
                conditions: parse_conditions(
                    "[{type: ResolvedRefs, status: 'False', reason: RefNotPermitted}]",
                ),
                ..Default::default()
            });
        }
    }
    let grants: Vec<&Value> = docs
        .iter()
        .filter(|d| kind(d) == "ReferenceGrant")
        .collect();
    let count = grants.len();
    grants
        .into_iter()
        .enumerate()
        .map(|(i, grant)| Step {
            label: format!(
                "ReferenceGrant {}/{} deleted",
                namespace(grant),
                name(grant)
            ),
            change: Change::Delete {
                kind: "ReferenceGrant".into(),
                namespace: namespace(grant).to_string(),
                name: name(grant).to_string(),
            },
            // The route loses its permission only once every grant is gone.
            expect: if i + 1 == count {
                expect.clone()
            } else {
                Vec::new()
            },
            addresses: None,
        })
        .collect()
}

fn parse_conditions(yaml: &str) -> Vec<super::case::ConditionExpectation> {
    serde_yaml::from_str(yaml).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str) -> Case {
        Case {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_literal_expectation_parses() {
        let inputs = StepInputs {
            usable_address: "127.0.9.250".into(),
            checks_ca_pem: "PEM".into(),
        };
        for name in [
            "GatewayClassObservedGenerationBump",
            "GatewayObservedGenerationBump",
            "GatewayModifyListeners",
            "GatewayStaticAddresses",
            "BackendTLSPolicyObservedGenerationBump",
            "BackendTLSPolicy",
        ] {
            let steps = steps_for(&case(name), &[], &inputs);
            assert!(!steps.is_empty(), "{name}");
            // Every step but BackendTLSPolicy's last names conditions to wait for.
            for step in &steps {
                assert!(!step.expect.is_empty(), "{name}: {}", step.label);
            }
        }
        let listeners = &steps_for(&case("GatewayModifyListeners"), &[], &inputs)[0].expect[0];
        assert_eq!(listeners.listeners.as_ref().map(Vec::len), Some(2));
        assert!(steps_for(&case("HTTPRouteSimpleSameNamespace"), &[], &inputs).is_empty());
    }

    #[test]
    fn reference_grant_deletion_expects_ref_not_permitted() {
        let docs: Vec<Value> = serde_yaml::from_str(
            r#"
- {kind: ReferenceGrant, metadata: {name: g, namespace: backend}}
- kind: UDPRoute
  metadata: {name: r, namespace: infra}
  spec: {parentRefs: [{name: gw, sectionName: udp}]}
"#,
        )
        .unwrap();
        let steps = steps_for(
            &case("UDPRouteReferenceGrant"),
            &docs,
            &StepInputs::default(),
        );
        assert_eq!(steps.len(), 1);
        assert!(matches!(&steps[0].change, Change::Delete { name, .. } if name == "g"));
        let expect = &steps[0].expect[0];
        assert_eq!(expect.parent_ref.as_deref(), Some("infra/gw"));
        assert_eq!(
            expect.conditions[0].reason.as_deref(),
            Some("RefNotPermitted")
        );
    }
}
