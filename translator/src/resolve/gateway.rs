//! GatewayClasses, Gateways and ListenerSets: which Gateways are Portico's, their listeners,
//! addresses and status.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use gateway_api::apis::experimental::gateways::Gateway;
use serde_json::{Value, json};

use crate::input::ObjectKey;
use crate::ir::TlsSecret;
use crate::problem::{ProblemKind, Severity};
use crate::resolve::context::{Ctx, GATEWAY_GROUP};
use crate::resolve::listener::{self, ListenerModel, Owner};
use crate::resolve::model::{LabelSelector, ListenerSpec, ParentRef, convert};
use crate::status::{Condition, ObjectStatus, conditions_json};
use crate::{CONTROLLER_NAME, Options};

pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";

pub struct GatewayModel {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    /// Accepted=False reason and message (the whole Gateway).
    pub not_accepted: Option<(String, String)>,
    /// Own listeners first, then those of attached ListenerSets.
    pub listeners: Vec<ListenerModel>,
    /// Bind addresses; empty = 0.0.0.0.
    pub addresses: Vec<String>,
    /// status.addresses.
    pub status_addresses: Vec<Value>,
    pub attached_listener_sets: i32,
    /// Envoy's rejection of this fleet's last config.
    pub rejected: Option<String>,
    pub secrets: BTreeMap<String, TlsSecret>,
}

impl GatewayModel {
    pub fn fleet(&self) -> String {
        format!("{}/{}", self.key.namespace, self.key.name)
    }
}

pub struct ListenerSetModel {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    /// Index into the gateway list, when the parent is a Portico Gateway.
    pub gateway: usize,
    /// Accepted=False reason and message.
    pub not_accepted: Option<(String, String)>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AllowedListeners {
    namespaces: Option<AllowedListenerNamespaces>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AllowedListenerNamespaces {
    from: Option<String>,
    selector: Option<LabelSelector>,
}

/// Names of GatewayClasses whose controllerName is Portico's, with their statuses.
pub fn classes(ctx: &Ctx) -> (BTreeSet<String>, Vec<ObjectStatus>) {
    let mut names = BTreeSet::new();
    let mut statuses = Vec::new();
    for class in &ctx.res.gateway_classes {
        if class.spec.controller_name != CONTROLLER_NAME {
            continue;
        }
        let name = class.metadata.name.clone().unwrap_or_default();
        names.insert(name.clone());
        let generation = class.metadata.generation;
        let conditions = vec![
            Condition::new("Accepted", true, "Accepted", "Portico accepts this GatewayClass"),
            Condition::new("SupportedVersion", true, "SupportedVersion", "Gateway API version is supported"),
        ];
        statuses.push(ObjectStatus {
            api_version: API_VERSION.into(),
            kind: "GatewayClass".into(),
            namespace: None,
            name,
            generation,
            status: json!({"conditions": conditions_json(&conditions, generation)}),
        });
    }
    (names, statuses)
}

fn meta_key(kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    ObjectKey::new(kind, meta.namespace.as_deref().unwrap_or("default"), meta.name.as_deref().unwrap_or_default())
}

/// Builds a model for every Gateway of an owned class, with ListenerSets merged in.
pub fn build(
    ctx: &mut Ctx,
    classes: &BTreeSet<String>,
    options: &Options,
    rejected: &BTreeMap<String, String>,
) -> (Vec<GatewayModel>, Vec<ListenerSetModel>) {
    let mut gateways: Vec<&Gateway> =
        ctx.res.gateways.iter().filter(|g| classes.contains(&g.spec.gateway_class_name)).collect();
    gateways.sort_by_key(|g| meta_key("Gateway", &g.metadata));
    let mut models = Vec::new();
    let mut pool = AddressPool::new(options);
    for gw in gateways {
        let key = meta_key("Gateway", &gw.metadata);
        let mut secrets = BTreeMap::new();
        let owner = Owner { kind: "Gateway", namespace: key.namespace.clone(), name: key.name.clone() };
        let listeners = gw
            .spec
            .listeners
            .iter()
            .map(|l| listener::build(ctx, owner.clone(), convert::<_, ListenerSpec>(l), &mut secrets))
            .collect();
        let mut not_accepted = None;
        if let Some(p) = gw.spec.infrastructure.as_ref().and_then(|i| i.parameters_ref.as_ref()) {
            let msg = format!("parametersRef {}/{} {} is not supported by Portico", p.group, p.kind, p.name);
            ctx.report(&key, Severity::Error, ProblemKind::NotAccepted, "spec.infrastructure.parametersRef", msg.clone());
            not_accepted = Some(("InvalidParameters".into(), msg));
        }
        let (addresses, status_addresses) = addresses(gw, &key, &mut pool, options);
        let fleet = format!("{}/{}", key.namespace, key.name);
        models.push(GatewayModel {
            key,
            generation: gw.metadata.generation,
            not_accepted,
            listeners,
            addresses,
            status_addresses,
            attached_listener_sets: 0,
            rejected: rejected.get(&fleet).cloned(),
            secrets,
        });
    }
    let sets = listener_sets(ctx, &mut models);
    for gw in &mut models {
        listener::mark_conflicts(&mut gw.listeners);
    }
    (models, sets)
}

fn listener_sets(ctx: &mut Ctx, gateways: &mut [GatewayModel]) -> Vec<ListenerSetModel> {
    let mut sets: Vec<_> = ctx.res.listener_sets.iter().collect();
    // Older ListenerSets win conflicts, then by namespace/name.
    sets.sort_by_key(|s| (s.metadata.creation_timestamp.as_ref().map(|t| t.0), meta_key("ListenerSet", &s.metadata)));
    let mut out = Vec::new();
    for set in sets {
        let key = meta_key("ListenerSet", &set.metadata);
        let parent: ParentRef = convert(&set.spec.parent_ref);
        let ns = parent.namespace.clone().unwrap_or_else(|| key.namespace.clone());
        if parent.kind.as_deref().unwrap_or("Gateway") != "Gateway" {
            continue;
        }
        let Some(gi) = gateways.iter().position(|g| g.key.namespace == ns && g.key.name == parent.name) else {
            continue;
        };
        let gw_spec = ctx
            .res
            .gateways
            .iter()
            .find(|g| meta_key("Gateway", &g.metadata) == gateways[gi].key)
            .map(|g| convert::<_, AllowedListeners>(&g.spec.allowed_listeners))
            .unwrap_or_default();
        let from = gw_spec.namespaces.as_ref().and_then(|n| n.from.clone()).unwrap_or_else(|| "None".into());
        let allowed = match from.as_str() {
            "All" => true,
            "Same" => key.namespace == ns,
            "Selector" => gw_spec
                .namespaces
                .as_ref()
                .and_then(|n| n.selector.as_ref())
                .is_some_and(|s| s.matches(&ctx.namespace_labels(&key.namespace))),
            _ => false,
        };
        let mut model = ListenerSetModel { key: key.clone(), generation: set.metadata.generation, gateway: gi, not_accepted: None };
        if !allowed {
            model.not_accepted = Some(("NotAllowed".into(), format!("Gateway {ns}/{} does not allow this ListenerSet", parent.name)));
            out.push(model);
            continue;
        }
        let owner = Owner { kind: "ListenerSet", namespace: key.namespace.clone(), name: key.name.clone() };
        let gw = &mut gateways[gi];
        for l in &set.spec.listeners {
            let built = listener::build(ctx, owner.clone(), convert::<_, ListenerSpec>(l), &mut gw.secrets);
            gw.listeners.push(built);
        }
        gw.attached_listener_sets += 1;
        out.push(model);
    }
    out
}

/// Hands out stable addresses from `Options::address_pool`.
struct AddressPool {
    base: u32,
    size: u32,
    used: BTreeSet<u32>,
}

impl AddressPool {
    fn new(options: &Options) -> Option<Self> {
        let (ip, len) = options.address_pool?;
        let len = len.min(32);
        let size = if len == 0 { u32::MAX } else { 1u32 << (32 - len) };
        let base = u32::from(ip) & !(size.wrapping_sub(1));
        Some(AddressPool { base, size, used: BTreeSet::new() })
    }

    fn assign(&mut self, id: &str) -> Option<String> {
        // Skip the network and broadcast addresses when the pool is big enough to have them.
        let (first, count) = if self.size > 2 { (1, self.size - 2) } else { (0, self.size) };
        let start = (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % u64::from(count)) as u32;
        for probe in 0..count {
            let offset = first + (start + probe) % count;
            if self.used.insert(offset) {
                return Some(Ipv4Addr::from(self.base.wrapping_add(offset)).to_string());
            }
        }
        None
    }
}

fn addresses(gw: &Gateway, key: &ObjectKey, pool: &mut Option<AddressPool>, options: &Options) -> (Vec<String>, Vec<Value>) {
    let mut bind = Vec::new();
    let mut status = Vec::new();
    let mut wants_assigned = false;
    for a in gw.spec.addresses.iter().flatten() {
        let type_ = a.r#type.clone().unwrap_or_else(|| "IPAddress".into());
        match (&a.value, type_.as_str()) {
            (Some(v), "IPAddress") if !v.is_empty() => {
                bind.push(v.clone());
                status.push(json!({"type": "IPAddress", "value": v}));
            }
            (_, "IPAddress") => wants_assigned = true,
            (Some(v), _) => status.push(json!({"type": type_, "value": v})),
            _ => {}
        }
    }
    if bind.is_empty() || wants_assigned {
        let assigned = match pool {
            Some(pool) => pool.assign(&format!("{}/{}", key.namespace, key.name)),
            None => None,
        };
        match assigned {
            Some(ip) => {
                status.push(json!({"type": "IPAddress", "value": ip}));
                bind.push(ip);
            }
            None => {
                if let Some(d) = &options.default_address {
                    let type_ = if d.parse::<std::net::IpAddr>().is_ok() { "IPAddress" } else { "Hostname" };
                    status.push(json!({"type": type_, "value": d}));
                }
            }
        }
    }
    (bind, status)
}

/// Gateway status, once routes have been attached.
pub fn gateway_status(gw: &GatewayModel) -> ObjectStatus {
    let invalid = gw.listeners.iter().filter(|l| !l.attachable()).count();
    let mut conditions = Vec::new();
    let accepted = match &gw.not_accepted {
        Some((reason, msg)) => Condition::new("Accepted", false, reason, msg.clone()),
        None if !gw.listeners.is_empty() && invalid == gw.listeners.len() => {
            Condition::new("Accepted", false, "ListenersNotValid", "No listener is valid")
        }
        None if invalid > 0 => Condition::new("Accepted", true, "ListenersNotValid", format!("{invalid} listener(s) are not valid")),
        None => Condition::new("Accepted", true, "Accepted", "Gateway is accepted"),
    };
    let is_accepted = accepted.status;
    conditions.push(accepted);
    let programmed = if !is_accepted {
        Condition::new("Programmed", false, "Invalid", "Gateway is not accepted")
    } else if let Some(msg) = &gw.rejected {
        Condition::new("Programmed", false, "Invalid", format!("Envoy rejected the configuration: {msg}"))
    } else {
        Condition::new("Programmed", true, "Programmed", "Configuration is served to the fleet")
    };
    conditions.push(programmed);
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
        status,
    }
}

/// ListenerSet status: its conditions and its own listeners.
pub fn listener_set_status(set: &ListenerSetModel, gateways: &[GatewayModel]) -> ObjectStatus {
    let gw = &gateways[set.gateway];
    let own: Vec<&ListenerModel> =
        gw.listeners.iter().filter(|l| l.owner.kind == "ListenerSet" && l.owner.name == set.key.name && l.owner.namespace == set.key.namespace).collect();
    let mut conditions = Vec::new();
    let invalid = own.iter().filter(|l| !l.attachable()).count();
    match &set.not_accepted {
        Some((reason, msg)) => {
            conditions.push(Condition::new("Accepted", false, reason, msg.clone()));
            conditions.push(Condition::new("Programmed", false, reason, msg.clone()));
        }
        None if !own.is_empty() && invalid == own.len() => {
            conditions.push(Condition::new("Accepted", false, "ListenersNotValid", "No listener is valid"));
            conditions.push(Condition::new("Programmed", false, "Invalid", "No listener is valid"));
        }
        None => {
            let (reason, msg) = if invalid > 0 {
                ("ListenersNotValid", format!("{invalid} listener(s) are not valid"))
            } else {
                ("Accepted", "ListenerSet is accepted".to_string())
            };
            conditions.push(Condition::new("Accepted", true, reason, msg));
            conditions.push(Condition::new("Programmed", true, "Programmed", "ListenerSet is programmed"));
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
        status: json!({"conditions": conditions_json(&conditions, set.generation), "listeners": listeners}),
    }
}

pub fn is_gateway_group(group: Option<&str>) -> bool {
    group.unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
}
