//! GatewayClasses, Gateways and ListenerSets: which Gateways are Portico's, their listeners,
//! addresses and status.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use gateway_api::apis::experimental::gateways::Gateway;
use serde_json::{Value, json};

use crate::input::ObjectKey;
use crate::ir::{ClientValidation, TlsSecret};
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
    /// Programmed=False AddressNotUsable message.
    pub address_not_usable: Option<String>,
    pub attached_listener_sets: i32,
    /// Envoy's rejection of this fleet's last config.
    pub rejected: Option<String>,
    pub secrets: BTreeMap<String, TlsSecret>,
    /// spec.tls.backend.clientCertificateRef, resolved (IR secret name).
    pub backend_client_cert: Option<String>,
    /// Gateway-level ResolvedRefs=False reason and message.
    pub unresolved: Option<(String, String)>,
    /// Client certificate validation: for every port, and per port.
    pub client_validation: Option<ClientValidation>,
    pub client_validation_per_port: BTreeMap<u16, ClientValidation>,
}

impl GatewayModel {
    pub fn client_validation_for(&self, port: u16) -> Option<ClientValidation> {
        self.client_validation_per_port
            .get(&port)
            .or(self.client_validation.as_ref())
            .cloned()
    }
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
struct GatewayTls {
    backend: Option<GatewayTlsBackend>,
    frontend: Option<Frontend>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Frontend {
    default: Option<FrontendTls>,
    #[serde(default)]
    per_port: Vec<PerPort>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PerPort {
    port: i32,
    #[serde(default)]
    tls: FrontendTls,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FrontendTls {
    validation: Option<FrontendValidation>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FrontendValidation {
    #[serde(default)]
    ca_certificate_refs: Vec<crate::resolve::model::ObjectRef>,
    mode: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GatewayTlsBackend {
    client_certificate_ref: Option<crate::resolve::model::ObjectRef>,
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
            Condition::new(
                "Accepted",
                true,
                "Accepted",
                "Portico accepts this GatewayClass",
            ),
            Condition::new(
                "SupportedVersion",
                true,
                "SupportedVersion",
                "Gateway API version is supported",
            ),
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

fn meta_key(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectKey {
    ObjectKey::new(
        kind,
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// Builds a model for every Gateway of an owned class, with ListenerSets merged in.
pub fn build(
    ctx: &mut Ctx,
    classes: &BTreeSet<String>,
    options: &Options,
    rejected: &BTreeMap<String, String>,
) -> (Vec<GatewayModel>, Vec<ListenerSetModel>) {
    let mut gateways: Vec<&Gateway> = ctx
        .res
        .gateways
        .iter()
        .filter(|g| classes.contains(&g.spec.gateway_class_name))
        .collect();
    gateways.sort_by_key(|g| meta_key("Gateway", &g.metadata));
    let mut models = Vec::new();
    let mut pool = AddressPool::new(options);
    for gw in gateways {
        let key = meta_key("Gateway", &gw.metadata);
        let mut secrets = BTreeMap::new();
        let owner = Owner {
            kind: "Gateway",
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        let listeners = gw
            .spec
            .listeners
            .iter()
            .map(|l| {
                listener::build(
                    ctx,
                    owner.clone(),
                    convert::<_, ListenerSpec>(l),
                    &mut secrets,
                )
            })
            .collect();
        let mut not_accepted = None;
        if let Some(p) = gw
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref())
        {
            let msg = format!(
                "parametersRef {}/{} {} is not supported by Portico",
                p.group, p.kind, p.name
            );
            ctx.report(
                &key,
                Severity::Error,
                ProblemKind::NotAccepted,
                "spec.infrastructure.parametersRef",
                msg.clone(),
            );
            not_accepted = Some(("InvalidParameters".into(), msg));
        }
        let addrs = addresses(gw, &key, &mut pool, options);
        if let Some(msg) = &addrs.unsupported {
            ctx.report(
                &key,
                Severity::Error,
                ProblemKind::NotAccepted,
                "spec.addresses",
                msg.clone(),
            );
            not_accepted.get_or_insert(("UnsupportedAddress".into(), msg.clone()));
        }
        if let Some(msg) = &addrs.not_usable {
            ctx.report(
                &key,
                Severity::Error,
                ProblemKind::NotAccepted,
                "spec.addresses",
                msg.clone(),
            );
        }
        let fleet = format!("{}/{}", key.namespace, key.name);
        let gw_tls: GatewayTls = convert(&gw.spec.tls);
        let mut backend_client_cert = None;
        let mut unresolved = None;
        let mut client_validation = None;
        let mut client_validation_per_port = BTreeMap::new();
        if let Some(frontend) = &gw_tls.frontend {
            let default = frontend
                .default
                .as_ref()
                .and_then(|d| d.validation.as_ref());
            if let Some(v) = default {
                match frontend_validation(ctx, &key.namespace, v) {
                    Ok(cv) => client_validation = Some(cv),
                    Err(e) => unresolved = Some(e),
                }
            }
            for p in &frontend.per_port {
                let (Some(v), Ok(port)) = (&p.tls.validation, u16::try_from(p.port)) else {
                    continue;
                };
                match frontend_validation(ctx, &key.namespace, v) {
                    Ok(cv) => {
                        client_validation_per_port.insert(port, cv);
                    }
                    Err(e) => unresolved = Some(e),
                }
            }
            if let Some((_, msg)) = &unresolved {
                ctx.report(
                    &key,
                    Severity::Error,
                    ProblemKind::NotAccepted,
                    "spec.tls.frontend",
                    msg.clone(),
                );
            }
        }
        if let Some(r) = gw_tls.backend.and_then(|b| b.client_certificate_ref) {
            match listener::resolve_secret(ctx, ("Gateway", &key.namespace), &r) {
                Ok((name, secret)) => {
                    secrets.insert(name.clone(), secret);
                    backend_client_cert = Some(name);
                }
                Err((reason, msg)) => {
                    let reason = if reason == "InvalidCertificateRef" {
                        "InvalidClientCertificateRef".into()
                    } else {
                        reason
                    };
                    ctx.report(
                        &key,
                        Severity::Error,
                        ProblemKind::NotAccepted,
                        "spec.tls.backend.clientCertificateRef",
                        msg.clone(),
                    );
                    unresolved = Some((reason, msg));
                }
            }
        }
        models.push(GatewayModel {
            key,
            generation: gw.metadata.generation,
            not_accepted,
            listeners,
            addresses: addrs.bind,
            status_addresses: addrs.status,
            address_not_usable: addrs.not_usable,
            attached_listener_sets: 0,
            rejected: rejected.get(&fleet).cloned(),
            secrets,
            backend_client_cert,
            unresolved,
            client_validation,
            client_validation_per_port,
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
    sets.sort_by_key(|s| {
        (
            s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            meta_key("ListenerSet", &s.metadata),
        )
    });
    let mut out = Vec::new();
    for set in sets {
        let key = meta_key("ListenerSet", &set.metadata);
        let parent: ParentRef = convert(&set.spec.parent_ref);
        let ns = parent
            .namespace
            .clone()
            .unwrap_or_else(|| key.namespace.clone());
        if parent.kind.as_deref().unwrap_or("Gateway") != "Gateway" {
            continue;
        }
        let Some(gi) = gateways
            .iter()
            .position(|g| g.key.namespace == ns && g.key.name == parent.name)
        else {
            continue;
        };
        let gw_spec = ctx
            .res
            .gateways
            .iter()
            .find(|g| meta_key("Gateway", &g.metadata) == gateways[gi].key)
            .map(|g| convert::<_, AllowedListeners>(&g.spec.allowed_listeners))
            .unwrap_or_default();
        let from = gw_spec
            .namespaces
            .as_ref()
            .and_then(|n| n.from.clone())
            .unwrap_or_else(|| "None".into());
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
        let mut model = ListenerSetModel {
            key: key.clone(),
            generation: set.metadata.generation,
            gateway: gi,
            not_accepted: None,
        };
        if !allowed {
            model.not_accepted = Some((
                "NotAllowed".into(),
                format!(
                    "Gateway {ns}/{} does not allow this ListenerSet",
                    parent.name
                ),
            ));
            out.push(model);
            continue;
        }
        let owner = Owner {
            kind: "ListenerSet",
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        let gw = &mut gateways[gi];
        for l in &set.spec.listeners {
            let built = listener::build(
                ctx,
                owner.clone(),
                convert::<_, ListenerSpec>(l),
                &mut gw.secrets,
            );
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
        let size = if len == 0 {
            u32::MAX
        } else {
            1u32 << (32 - len)
        };
        let base = u32::from(ip) & !(size.wrapping_sub(1));
        Some(AddressPool {
            base,
            size,
            used: BTreeSet::new(),
        })
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.base) < self.size
    }

    fn reserve(&mut self, ip: Ipv4Addr) {
        self.used.insert(u32::from(ip).wrapping_sub(self.base));
    }

    fn assign(&mut self, id: &str) -> Option<String> {
        // Skip the network and broadcast addresses when the pool is big enough to have them.
        let (first, count) = if self.size > 2 {
            (1, self.size - 2)
        } else {
            (0, self.size)
        };
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

/// The outcome of spec.addresses.
struct Addresses {
    bind: Vec<String>,
    status: Vec<Value>,
    /// Accepted=False UnsupportedAddress message.
    unsupported: Option<String>,
    /// Programmed=False AddressNotUsable message.
    not_usable: Option<String>,
}

fn addresses(
    gw: &Gateway,
    key: &ObjectKey,
    pool: &mut Option<AddressPool>,
    options: &Options,
) -> Addresses {
    let mut out = Addresses {
        bind: Vec::new(),
        status: Vec::new(),
        unsupported: None,
        not_usable: None,
    };
    let mut wants_assigned = false;
    for a in gw.spec.addresses.iter().flatten() {
        let type_ = a.r#type.clone().unwrap_or_else(|| "IPAddress".into());
        let value = a.value.clone().filter(|v| !v.is_empty());
        match (value, type_.as_str()) {
            (Some(v), "IPAddress") => match v.parse::<Ipv4Addr>() {
                // With a pool, only its addresses are Portico's to bind.
                Ok(ip) if pool.as_ref().is_none_or(|p| p.contains(ip)) => {
                    if let Some(p) = pool.as_mut() {
                        p.reserve(ip);
                    }
                    out.bind.push(v.clone());
                    out.status.push(json!({"type": "IPAddress", "value": v}));
                }
                Ok(_) => out.not_usable = Some(format!("address {v} is outside the address pool")),
                Err(_) => out.not_usable = Some(format!("address {v:?} is not an IPv4 address")),
            },
            (None, "IPAddress") => wants_assigned = true,
            (_, other) => {
                out.unsupported = Some(format!(
                    "address type {other:?} is not supported (IPAddress only)"
                ))
            }
        }
    }
    if out.bind.is_empty() || wants_assigned {
        let assigned = pool
            .as_mut()
            .and_then(|p| p.assign(&format!("{}/{}", key.namespace, key.name)));
        match assigned {
            Some(ip) => {
                out.status.push(json!({"type": "IPAddress", "value": ip}));
                out.bind.push(ip);
            }
            None => {
                if let Some(d) = &options.default_address {
                    let type_ = if d.parse::<std::net::IpAddr>().is_ok() {
                        "IPAddress"
                    } else {
                        "Hostname"
                    };
                    out.status.push(json!({"type": type_, "value": d}));
                }
            }
        }
    }
    out
}

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
        status,
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
        status: json!({"conditions": conditions_json(&conditions, set.generation), "listeners": listeners}),
    }
}

pub fn is_gateway_group(group: Option<&str>) -> bool {
    group.unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
}

/// Resolves frontend client-certificate validation: the CA bundle from ConfigMaps (or Secrets)
/// under `ca.crt`, and the mode.
fn frontend_validation(
    ctx: &Ctx,
    gw_ns: &str,
    v: &FrontendValidation,
) -> Result<ClientValidation, (String, String)> {
    let mut bundle = String::new();
    for r in &v.ca_certificate_refs {
        let group = r.group.clone().unwrap_or_default();
        let kind = r.kind.clone().unwrap_or_else(|| "ConfigMap".into());
        let ns = r.namespace.clone().unwrap_or_else(|| gw_ns.to_string());
        if !group.is_empty() || !matches!(kind.as_str(), "ConfigMap" | "Secret") {
            return Err((
                "InvalidCACertificateRef".into(),
                format!("caCertificateRef {group}/{kind} is not supported"),
            ));
        }
        if !ctx.ref_allowed((GATEWAY_GROUP, "Gateway", gw_ns), ("", &kind, &ns, &r.name)) {
            return Err((
                "RefNotPermitted".into(),
                format!(
                    "no ReferenceGrant in {ns} allows this Gateway to use {kind} {}",
                    r.name
                ),
            ));
        }
        let pem = match kind.as_str() {
            "ConfigMap" => ctx
                .config_maps
                .get(&(ns.clone(), r.name.clone()))
                .and_then(|c| c.data.as_ref()?.get("ca.crt").cloned()),
            _ => ctx
                .secrets
                .get(&(ns.clone(), r.name.clone()))
                .and_then(|s| {
                    let bytes = s.data.as_ref()?.get("ca.crt")?;
                    String::from_utf8(bytes.0.clone()).ok()
                }),
        };
        match pem {
            Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => bundle.push_str(&pem),
            _ => {
                return Err((
                    "InvalidCACertificateRef".into(),
                    format!("{kind} {ns}/{} has no PEM certificate in ca.crt", r.name),
                ));
            }
        }
    }
    if bundle.is_empty() {
        return Err((
            "InvalidCACertificateRef".into(),
            "client certificate validation needs caCertificateRefs".into(),
        ));
    }
    Ok(ClientValidation {
        ca_pem: bundle,
        allow_insecure: v.mode.as_deref() == Some("AllowInsecureFallback"),
    })
}
