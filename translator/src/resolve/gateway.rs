//! GatewayClasses, Gateways and ListenerSets: which Gateways are Portico's, their listeners,
//! addresses and status.

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::apis::experimental::gateways::Gateway;
use serde_json::{Value, json};

use crate::input::ObjectKey;
use crate::ir::{ClientValidation, TlsSecret};
use crate::problem::{ProblemKind, Severity};
use crate::resolve::addresses::{AddressPool, addresses};
use crate::resolve::context::Ctx;
use crate::resolve::gateway_tls::{GatewayTls, frontend_validation};
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
    /// spec.infrastructure labels and annotations.
    pub infrastructure: crate::ir::Infrastructure,
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
            status: json!({"conditions": conditions_json(&conditions, generation)}).into(),
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
            infrastructure: gw
                .spec
                .infrastructure
                .as_ref()
                .map(|i| crate::ir::Infrastructure {
                    labels: i.labels.clone().unwrap_or_default(),
                    annotations: i.annotations.clone().unwrap_or_default(),
                })
                .unwrap_or_default(),
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
