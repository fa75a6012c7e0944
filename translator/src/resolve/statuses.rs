//! Route and BackendTLSPolicy status documents (the `status` of each object), built for
//! `run_with`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::CONTROLLER_NAME;
use crate::resolve::attach::{ParentOutcome, RouteHead};
use crate::resolve::backends::RefError;
use crate::resolve::context::{self, Ctx};
use crate::resolve::gateway;
use crate::status::{ObjectStatus, StatusJson, conditions_json, json_str, write_condition};

/// Writes the status text directly (no `Value` tree): the same bytes as rendering the
/// `Value` with `to_string`, keys in serde_json's (sorted) order.
pub fn route_status(
    head: &RouteHead,
    outcomes: &[ParentOutcome],
    gateways: &[gateway::GatewayModel],
    invalid: Option<&(String, String)>,
    partially_invalid: Option<&String>,
    unresolved: Option<&RefError>,
) -> ObjectStatus {
    let route_ns = head.key.namespace.as_str();
    let mut out = String::with_capacity(16 + 512 * outcomes.len());
    out.push_str("{\"parents\":[");
    for (i, o) in outcomes.iter().enumerate() {
        let _ = &gateways[o.gateway];
        let parent_ns = o.parent_ref.namespace.as_deref().unwrap_or(route_ns);
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"conditions\":[");
        let g = head.generation;
        match (invalid, &o.result) {
            (Some((reason, msg)), _) | (None, Err((reason, msg))) => {
                write_condition(&mut out, "Accepted", false, reason, msg, g)
            }
            (None, Ok(_)) => write_condition(
                &mut out,
                "Accepted",
                true,
                "Accepted",
                "Route is accepted",
                g,
            ),
        }
        out.push(',');
        match unresolved {
            Some(e) => write_condition(&mut out, "ResolvedRefs", false, e.reason, &e.message, g),
            None => write_condition(
                &mut out,
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "All references resolved",
                g,
            ),
        }
        // Only while the route is accepted by this parent: the spec sets the condition
        // only when it is True, and never on a route that is not accepted.
        if let (Some(msg), None, Ok(_)) = (partially_invalid, invalid, &o.result) {
            out.push(',');
            write_condition(
                &mut out,
                "PartiallyInvalid",
                true,
                "UnsupportedValue",
                msg,
                g,
            );
        }
        out.push_str("],\"controllerName\":");
        json_str(&mut out, CONTROLLER_NAME);
        out.push_str(",\"parentRef\":");
        o.write_status_ref(&mut out, route_ns, parent_ns);
        out.push('}');
    }
    out.push_str("]}");
    ObjectStatus {
        api_version: api_version(&head.key.kind).into(),
        kind: head.key.kind.clone(),
        namespace: Some(head.key.namespace.clone()),
        name: head.key.name.clone(),
        generation: head.generation,
        status: StatusJson::from_text(out),
    }
}

fn api_version(kind: &str) -> &'static str {
    match kind {
        "TCPRoute" | "UDPRoute" => "gateway.networking.k8s.io/v1alpha2",
        _ => "gateway.networking.k8s.io/v1",
    }
}

/// BackendTLSPolicy status: one ancestor per Portico Gateway whose routes use the policy.
pub fn policy_statuses(
    ctx: &Ctx,
    gateways: &[gateway::GatewayModel],
    uses: &BTreeSet<(usize, usize)>,
) -> Vec<ObjectStatus> {
    let mut out = Vec::new();
    for (pi, policy) in ctx.tls_policies.iter().enumerate() {
        // A conflicted policy is reported where the policies that beat it are used.
        let winners = policy
            .conflicts
            .as_ref()
            .map(|c| c.0.as_slice())
            .unwrap_or(&[]);
        let gateways_used: BTreeSet<usize> = uses
            .iter()
            .filter(|(p, _)| *p == pi || winners.contains(p))
            .map(|(_, gi)| *gi)
            .collect();
        let ancestors: Vec<Value> = gateways_used
            .iter()
            .map(|gi| {
                let gw = &gateways[*gi];
                json!({
                    "ancestorRef": {
                        "group": context::GATEWAY_GROUP,
                        "kind": "Gateway",
                        "namespace": gw.key.namespace,
                        "name": gw.key.name,
                    },
                    "controllerName": CONTROLLER_NAME,
                    "conditions": conditions_json(&policy.conditions(), policy.generation),
                })
            })
            .collect();
        if ancestors.is_empty() {
            continue;
        }
        out.push(ObjectStatus {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: policy.key.kind.clone(),
            namespace: Some(policy.key.namespace.clone()),
            name: policy.key.name.clone(),
            generation: policy.generation,
            status: json!({"ancestors": ancestors}).into(),
        });
    }
    out
}
