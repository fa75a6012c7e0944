//! Gateway and ListenerSet status.

use serde_json::{Value, json};

use crate::resolve::gateway::{API_VERSION, GatewayModel, ListenerSetModel};
use crate::resolve::listener::ListenerModel;
use crate::status::{Condition, ObjectStatus, conditions_json};

/// Gateway status, once routes have been attached.
pub fn gateway_status(gw: &GatewayModel) -> ObjectStatus {
    let invalid = gw.listeners.iter().filter(|l| !l.attachable()).count();
    let mut conditions = Vec::new();
    let accepted = match &gw.not_accepted {
        Some((reason, msg)) => Condition::new("Accepted", false, reason, msg.clone()),
        None if !gw.listeners.is_empty() && invalid == gw.listeners.len() => Condition::new(
            "Accepted",
            false,
            "ListenersNotValid",
            "No listener is valid",
        ),
        None if invalid > 0 => Condition::new(
            "Accepted",
            true,
            "ListenersNotValid",
            format!("{invalid} listener(s) are not valid"),
        ),
        None => Condition::new("Accepted", true, "Accepted", "Gateway is accepted"),
    };
    let is_accepted = accepted.status;
    conditions.push(accepted);
    let programmed = if !is_accepted {
        Condition::new("Programmed", false, "Invalid", "Gateway is not accepted")
    } else if let Some(msg) = &gw.address_not_usable {
        Condition::new("Programmed", false, "AddressNotUsable", msg.clone())
    } else if let Some(msg) = &gw.rejected {
        Condition::new(
            "Programmed",
            false,
            "Invalid",
            format!("Envoy rejected the configuration: {msg}"),
        )
    } else {
        Condition::new(
            "Programmed",
            true,
            "Programmed",
            "Configuration is served to the fleet",
        )
    };
    conditions.push(programmed);
    let insecure = gw
        .client_validation
        .iter()
        .chain(gw.client_validation_per_port.values())
        .any(|v| v.allow_insecure);
    if insecure {
        conditions.push(Condition::new(
            "InsecureFrontendValidationMode",
            true,
            "ConfigurationChanged",
            "client certificate validation accepts clients without a valid certificate (AllowInsecureFallback)",
        ));
    }
    conditions.push(match &gw.unresolved {
        Some((reason, msg)) => Condition::new("ResolvedRefs", false, reason, msg.clone()),
        None => Condition::new(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "All references resolved",
        ),
    });
    let listeners: Vec<Value> = gw
        .listeners
        .iter()
        .filter(|l| l.owner.kind == "Gateway")
        .map(|l| {
            let mut v = l.status_json();
            v["conditions"] = conditions_json(&l.conditions(), gw.generation);
            v
        })
        .collect();
    let mut status = json!({
        "conditions": conditions_json(&conditions, gw.generation),
        "listeners": listeners,
    });
    if !gw.status_addresses.is_empty() {
        status["addresses"] = Value::Array(gw.status_addresses.clone());
    }
    if gw.attached_listener_sets > 0 || gw.listeners.iter().any(|l| l.owner.kind == "ListenerSet") {
        status["attachedListenerSets"] = json!(gw.attached_listener_sets);
    } else {
        status["attachedListenerSets"] = json!(0);
    }
    ObjectStatus {
        api_version: API_VERSION.into(),
        kind: "Gateway".into(),
        namespace: Some(gw.key.namespace.clone()),
        name: gw.key.name.clone(),
        generation: gw.generation,
        status: status.into(),
    }
}

/// ListenerSet status: its conditions and its own listeners.
pub fn listener_set_status(set: &ListenerSetModel, gateways: &[GatewayModel]) -> ObjectStatus {
    let gw = &gateways[set.gateway];
    let own: Vec<&ListenerModel> = gw
        .listeners
        .iter()
        .filter(|l| {
            l.owner.kind == "ListenerSet"
                && l.owner.name == set.key.name
                && l.owner.namespace == set.key.namespace
        })
        .collect();
    let mut conditions = Vec::new();
    // A ListenerSet listener with unresolved references counts as not valid (unlike on a
    // Gateway, where it still takes routes).
    let invalid = own.iter().filter(|l| !l.programmable()).count();
    match &set.not_accepted {
        Some((reason, msg)) => {
            conditions.push(Condition::new("Accepted", false, reason, msg.clone()));
            conditions.push(Condition::new("Programmed", false, reason, msg.clone()));
        }
        None if !own.is_empty() && invalid == own.len() => {
            conditions.push(Condition::new(
                "Accepted",
                false,
                "ListenersNotValid",
                "No listener is valid",
            ));
            conditions.push(Condition::new(
                "Programmed",
                false,
                "ListenersNotValid",
                "No listener is valid",
            ));
        }
        None => {
            let (reason, msg) = if invalid > 0 {
                (
                    "ListenersNotValid",
                    format!("{invalid} listener(s) are not valid"),
                )
            } else {
                ("Accepted", "ListenerSet is accepted".to_string())
            };
            conditions.push(Condition::new("Accepted", true, reason, msg));
            conditions.push(Condition::new(
                "Programmed",
                true,
                "Programmed",
                "ListenerSet is programmed",
            ));
        }
    }
    let listeners: Vec<Value> = own
        .iter()
        .map(|l| {
            let mut v = l.status_json();
            v["port"] = json!(l.spec.port);
            v["conditions"] = conditions_json(&l.conditions(), set.generation);
            v
        })
        .collect();
    ObjectStatus {
        api_version: API_VERSION.into(),
        kind: "ListenerSet".into(),
        namespace: Some(set.key.namespace.clone()),
        name: set.key.name.clone(),
        generation: set.generation,
        status: json!({"conditions": conditions_json(&conditions, set.generation), "listeners": listeners}).into(),
    }
}
