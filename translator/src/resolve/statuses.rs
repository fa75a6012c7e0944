//! Route and BackendTLSPolicy status documents (the `status` of each object), built for
//! `run_with`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::CONTROLLER_NAME;
use crate::resolve::attach::{ParentOutcome, RouteHead};
use crate::resolve::backends::RefError;
use crate::resolve::context::{self, Ctx};
use crate::resolve::gateway;
use crate::status::{Condition, ObjectStatus, conditions_json};

pub fn route_status(
    head: &RouteHead,
    outcomes: &[ParentOutcome],
    gateways: &[gateway::GatewayModel],
    invalid: Option<&(String, String)>,
    partially_invalid: Option<&String>,
    unresolved: Option<&RefError>,
) -> ObjectStatus {
    let parents: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let parent_ns = o
                .parent_ref
                .namespace
                .clone()
                .unwrap_or_else(|| head.key.namespace.clone());
            let _ = &gateways[o.gateway];
            let accepted = match (invalid, &o.result) {
                (Some((reason, msg)), _) => Condition::new("Accepted", false, reason, msg.clone()),
                (None, Ok(_)) => Condition::new("Accepted", true, "Accepted", "Route is accepted"),
                (None, Err((reason, msg))) => {
                    Condition::new("Accepted", false, reason, msg.clone())
                }
            };
            let resolved = match unresolved {
                Some(e) => Condition::new("ResolvedRefs", false, e.reason, e.message.clone()),
                None => Condition::new(
                    "ResolvedRefs",
                    true,
                    "ResolvedRefs",
                    "All references resolved",
                ),
            };
            let mut conditions = vec![accepted, resolved];
            // Only while the route is accepted by this parent: the spec sets the condition
            // only when it is True, and never on a route that is not accepted.
            if let (Some(msg), None, Ok(_)) = (partially_invalid, invalid, &o.result) {
                conditions.push(Condition::new(
                    "PartiallyInvalid",
                    true,
                    "UnsupportedValue",
                    msg.clone(),
                ));
            }
            // Built by moving values in: `json!` would serialize (deep-copy) each nested Value.
            let mut parent = serde_json::Map::new();
            parent.insert(
                "parentRef".into(),
                o.status_ref(&head.key.namespace, &parent_ns),
            );
            parent.insert("controllerName".into(), CONTROLLER_NAME.into());
            parent.insert(
                "conditions".into(),
                conditions_json(&conditions, head.generation),
            );
            Value::Object(parent)
        })
        .collect();
    let mut status = serde_json::Map::new();
    status.insert("parents".into(), Value::Array(parents));
    ObjectStatus {
        api_version: api_version(&head.key.kind).into(),
        kind: head.key.kind.clone(),
        namespace: Some(head.key.namespace.clone()),
        name: head.key.name.clone(),
        generation: head.generation,
        status: Value::Object(status).into(),
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
